"""Browser-ready 3D models of staged treatments: decimation, movement maps, the compact stored format
and the Plotly figure of a stage.

The full-resolution STL/PLY/OBJ files stay the source (kept as SOURCE/SCAN assets); a job
(`core.services.mesh3d.Mesh3DService.prepare`) decimates every stage of every arch to at most
`decimate.TARGET_TRIANGLES` triangles, measures how far each vertex moved from the first stage, and
stores one compact binary asset per stage and arch (`pack`). The viewer then only reads those.
VTK is imported inside the functions that need it, so importing this package stays cheap.
"""
