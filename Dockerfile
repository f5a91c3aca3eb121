FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
# latlab/server, latlab/agent, ... are links to the folders below: installed as latlab.server, ...
COPY latlab latlab
COPY server server
COPY agent agent
COPY lut lut
COPY predictors predictors
COPY migrations migrations
RUN pip install --no-cache-dir '.[server,agent,s3]'
EXPOSE 8000
CMD ["latlab", "server", "--host", "0.0.0.0", "--port", "8000"]
