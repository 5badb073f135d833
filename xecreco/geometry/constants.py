"""Design constants of the MEG II XEC sensor layout (lengths cm, angles deg).

Source: ``physics.md`` section 1 (MEG II design, EPJC 78 (2018) 380), cross-checked against the
design dump ``reference/sensor_positions.txt`` (every analytic position agrees to < 0.1 mm).
Azimuths ``phi`` are measured from the -x axis, ``phi = atan2(y, -x)``, so the XEC centre is at
phi = 0 and the top (y > 0) has phi > 0. Every sensor position of :mod:`xecreco.geometry.sensors`
is built from these numbers and nothing else.
"""

from __future__ import annotations

import math

# --- sensor counts and id ranges (physics.md section 1) ------------------------------------------
N_SENSORS = 4760
N_MPPC = 4092
#: first id and count of each block of ids
INNER_ID0, INNER_COUNT = 0, 4092
OUTER_COARSE_ID0, OUTER_COARSE_COUNT = 4092, 216
US_ID0, US_COUNT = 4308, 144
DS_ID0, DS_COUNT = 4452, 144
TOP_ID0, TOP_COUNT = 4596, 73
BOTTOM_ID0, BOTTOM_COUNT = 4669, 73
OUTER_CENTRE_ID0, OUTER_CENTRE_COUNT = 4742, 18

# --- inner face: VUV-MPPCs on a cylinder ----------------------------------------------------------
#: radius of the MPPC photo-surface, cm (64.84 cm support + 0.13 cm): the R of the (u, v, w) frame
R_INNER = 64.97
INNER_N_ROWS = 93  # azimuth rows, row 0 at the top (phi > 0)
INNER_N_COLS = 44  # z columns, col 0 at the most upstream z
INNER_Z_PITCH = 1.50977  # cm
INNER_PHI_PITCH_DEG = 1.34968  # deg (1.5305 cm of arc at R_INNER)

# --- outer face: 2-inch PMTs on a cylinder --------------------------------------------------------
R_OUTER = 106.27  # cm (w = 41.30)
OUTER_N_STRIPS = 24  # coarse azimuth strips, strip 0 at the top
OUTER_N_Z = 9  # coarse z positions
OUTER_Z_PITCH = 10.356  # cm
OUTER_PHI_PITCH_DEG = 5.230  # deg
#: dense central patch: 5 z values x 6 azimuths
OUTER_DENSE_N_Z = 5
OUTER_DENSE_N_PHI = 6
OUTER_DENSE_Z_PITCH = 6.2  # cm
OUTER_DENSE_PHI_PITCH_DEG = 3.487  # deg
#: coarse ids that physically sit on the dense lattice: coarse strip -> dense azimuth index and
#: coarse z index -> dense z index (read off reference/sensor_positions.txt: ids 4185-4187 are
#: strip 10 at dense azimuth 0, 4194-4196 strip 11 at 2, 4203-4205 strip 12 at 3, 4212-4214
#: strip 13 at 5; coarse z 3, 4, 5 sit at dense z 0, 2, 4). The 18 dedicated PMTs 4742-4759 fill
#: the remaining dense cells in (azimuth index, z index) row-major order.
OUTER_DENSE_STRIP_TO_PHI = {10: 0, 11: 2, 12: 3, 13: 5}
OUTER_DENSE_IZ_TO_Z = {3: 0, 4: 2, 5: 4}

# --- upstream / downstream faces: PMTs on cones ---------------------------------------------------
SIDE_N_STRIPS = 24  # azimuth strips (same azimuths as the outer coarse strips)
SIDE_N_RINGS = 6
SIDE_R0 = 69.53  # cm, radius of ring 0
SIDE_R_PITCH = 6.684  # cm per ring
SIDE_Z0 = 35.155  # cm, |z| of ring 0
SIDE_Z_PITCH = 2.337  # cm per ring
#: tilt of the side-face normals from the z axis, deg: follows from the cone slope,
#: atan(2.337 / 6.684) = 19.27 deg (physics.md quotes 19.3 deg)
SIDE_NORMAL_TILT_DEG = math.degrees(math.atan2(SIDE_Z_PITCH, SIDE_R_PITCH))

# --- top / bottom faces: PMTs on flat half-planes through the z axis ------------------------------
#: plane azimuth measured from +x is +-117.24 deg, i.e. phi = +-62.76 deg from -x
TOP_PLANE_AZIMUTH_DEG = 117.24
TOP_PLANE_PHI_DEG = 180.0 - TOP_PLANE_AZIMUTH_DEG
#: sensors per row, row 0 at the smallest radius; ids run row by row, z ascending in a row.
#: A row of n sensors is centred on z = 0, so odd rows sit on multiples of the pitch and even rows
#: on half-pitch offsets: this is the stagger (true neighbours 6.12 cm in a row, 7.56 cm across).
HEX_ROW_LENGTHS = (11, 12, 11, 12, 13, 14)
HEX_R0 = 68.27  # cm, radius of row 0
HEX_R_PITCH = 6.91  # cm per row
HEX_Z_PITCH = 6.12  # cm along z in a row
#: sensors closer than this are hex neighbours (6.12 cm in a row, 7.56 cm between rows)
HEX_NEIGHBOUR_DISTANCE = 8.0  # cm

# --- sensor sizes (physics.md section 1) ----------------------------------------------------------
MPPC_CHIP_SIDE = 0.590  # cm, one of 4 chips (5.90 x 5.90 mm)
MPPC_CHIP_GAP = 0.050  # cm between chips
#: offset of each chip centre from the sensor centre along both sensor axes, cm
MPPC_CHIP_OFFSET = 0.5 * (MPPC_CHIP_SIDE + MPPC_CHIP_GAP)
MPPC_ACTIVE_AREA = 4 * MPPC_CHIP_SIDE**2  # cm^2 (1.39)
#: in-plane second moment <x^2> = <y^2> of the MPPC active area about its centre, cm^2
MPPC_SECOND_MOMENT = MPPC_CHIP_OFFSET**2 + MPPC_CHIP_SIDE**2 / 12.0
#: full extent of the MPPC active area, cm
MPPC_SIZE = 2 * MPPC_CHIP_SIDE + MPPC_CHIP_GAP
PMT_RADIUS = 2.25  # cm, photocathode
PMT_AREA = math.pi * PMT_RADIUS**2  # cm^2
PMT_SECOND_MOMENT = PMT_RADIUS**2 / 4.0  # cm^2, <x^2> of a uniform disc
PMT_SIZE = 2 * PMT_RADIUS  # cm

# --- fiducial volume in (u, v, w), cm (physics.md section 1) --------------------------------------
FIDUCIAL_U = 23.9
FIDUCIAL_V = 67.9
FIDUCIAL_W = (0.0, 42.0)

# --- target and light in vacuum ------------------------------------------------------------------
#: Centre of the MEG II muon stopping target, the photon vertex assumed when none is measured (cm).
TARGET_CENTRE_CM = (0.0, 0.0, 0.0)
#: Speed of light in vacuum, cm/ns (photon time of flight from the vertex).
SPEED_OF_LIGHT_CM_PER_NS = 29.9792458
#: Effective (group) speed of scintillation light in liquid xenon for propagation delays, cm/ns
#: (physics.md section 2: 8.5, tunable 7-12): the default of the simulation's light propagation, the
#: classical timing calibration and the inpainting baselines' time model.
LXE_LIGHT_SPEED_CM_PER_NS = 8.5
