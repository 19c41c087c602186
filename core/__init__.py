"""Treatment Simulation Studio core: Streamlit-free domain, storage, services and jobs."""
