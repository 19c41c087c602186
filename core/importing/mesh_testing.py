"""Old name of `core.fixtures.meshes` (test and benchmark data), kept so code written against it
keeps working; import from `core.fixtures.meshes`."""

from core.fixtures.meshes import (  # noqa: F401
    make_arch_mesh,
    tiny_stl,
    write_obj,
    write_ply_ascii,
    write_ply_binary,
    write_stl,
    write_stl_ascii,
)
