# latlab's two images, one build target each (docker-compose.yml builds both):
#   docker build --target server -t latlab-server:0.1.0 .   latlab server: extras server, s3
#   docker build --target agent -t latlab-agent:0.1.0 .     latlab agent (CPU): extras agent, tflite
# Each role installs its dependencies from pyproject.toml alone, in a layer before any source is
# copied: a code change rebuilds the wheel and one small layer, not every dependency. Both run as
# the unprivileged user latlab. tests/test_deployment.py reads this file line by line (no Docker
# engine runs in CI); README.md, "Production setup", says how to run them.

# An exact release, not a digest: no registry could be reached where this line was written to
# read one. To pin the bytes too: `docker buildx imagetools inspect python:3.11.15-slim-trixie`,
# then FROM python:3.11.15-slim-trixie@sha256:<that digest>.
FROM python:3.11.15-slim-trixie AS base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# USER below names it by number, so that Kubernetes' runAsNonRoot can check it
RUN groupadd --system --gid 10001 latlab \
 && useradd --system --uid 10001 --gid latlab --create-home --home-dir /home/latlab latlab

# The distribution, built once for both roles. The wheel holds latlab/ alone, the role folders
# through its links (DESIGN.md, "Layout"), so no source tree lands in an image.
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY latlab latlab
COPY server server
COPY agent agent
COPY lut lut
COPY predictors predictors
COPY migrations migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

# The API server. Its data directory is made here, owned by latlab, so that a named volume
# mounted on it starts out writable (Docker copies the ownership into a new, empty volume).
FROM base AS server
RUN install --directory --owner=latlab --group=latlab /data
# The dependencies, as pip resolves the extras from pyproject.toml, on a stub of the package
# (an empty latlab) that is removed again: this layer changes only with pyproject.toml.
COPY pyproject.toml /tmp/deps/
RUN cd /tmp/deps && mkdir latlab && touch latlab/__init__.py README.md \
 && pip install '.[server,s3]' \
 && pip uninstall --yes latlab \
 && cd / && rm -rf /tmp/deps
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
ENV LATLAB_DATA_DIR=/data
WORKDIR /home/latlab
USER 10001:10001
EXPOSE 8000
# /healthz: 503 until the database is at the migrations' head and the blob store answers.
# The slim image has no curl; urlopen raises (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["latlab", "server", "--host", "0.0.0.0", "--port", "8000"]

# A CPU device agent (onnxruntime and LiteRT). /state holds its registration (compose mounts a
# volume there), owned by latlab as /data is above.
FROM base AS agent
RUN install --directory --owner=latlab --group=latlab /state
COPY pyproject.toml /tmp/deps/
RUN cd /tmp/deps && mkdir latlab && touch latlab/__init__.py README.md \
 && pip install '.[agent,tflite]' \
 && pip uninstall --yes latlab \
 && cd / && rm -rf /tmp/deps
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
WORKDIR /home/latlab
USER 10001:10001
# An agent serves nothing to probe: the server sees it through its heartbeats (last_seen_at).
HEALTHCHECK NONE
CMD ["latlab", "agent"]
