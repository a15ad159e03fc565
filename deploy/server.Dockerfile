FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lobbywatch ./lobbywatch
COPY server ./server
COPY edge_agent ./edge_agent
COPY lobby_sim ./lobby_sim
RUN pip install --no-cache-dir ".[server,postgres]" && useradd --system --home /data lobbywatch \
    && mkdir -p /data && chown lobbywatch /data
USER lobbywatch
WORKDIR /data
EXPOSE 8000
CMD ["lobbywatch", "serve"]
