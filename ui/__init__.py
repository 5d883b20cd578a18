"""The Streamlit UI: talks to the router's REST API only."""
