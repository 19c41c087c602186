"""Old name of the generators now in `core.fixtures` (recordings, iTero exports, tiny STLs), kept so
code written against it keeps working; import from `core.fixtures.*`."""

from core.fixtures.itero import make_itero_export  # noqa: F401
from core.fixtures.meshes import tiny_stl  # noqa: F401
from core.fixtures.recordings import make_test_recording, render_stage_still  # noqa: F401
