"""Safe handling of uploaded inputs: content sniffing, still images, ZIP archives, file naming,
screen recordings and iTero exports. Pure Python (no Streamlit); every rejection raises
`core.errors.ValidationError` with a message that can be shown to the user as is."""
