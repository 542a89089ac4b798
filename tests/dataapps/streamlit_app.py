"""A Streamlit app that says who is calling: from st.context.headers (the WebSocket
upgrade's headers) and st.user (server.trustedUserHeaders). Each run writes
`run=<query run> user=<X-Forwarded-User>` so a client can tell its reruns apart."""

import streamlit as st

from seen import record

headers = dict(st.context.headers)
run = st.query_params.get("run", "")
record("streamlit run", headers, run=run, st_user=st.user.to_dict())
st.write(f"run={run} user={headers.get('X-Forwarded-User')} st.user={st.user.get('name')}")
