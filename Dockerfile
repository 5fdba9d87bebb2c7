# scanner as a watch-folder daemon:
#   docker build -t scanner .
#   docker run -v /srv/incoming:/incoming -v /srv/scanner:/data scanner
# Bind mounts from some hosts send no file events: add `--polling` to the command then.
# scripts/check_dockerfile.sh lints this file and runs the same install steps in a fresh venv.

# Build stage: the wheel and every runtime dependency, installed into one virtual environment
# (the pinned versions of constraints.txt; no TensorFlow: the `export` extra is not installed).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY scanner ./scanner
COPY plugins ./plugins
RUN python -m venv /opt/scanner \
    && /opt/scanner/bin/pip install --no-cache-dir -c constraints.txt .

# Runtime stage: the virtual environment alone, run by an unprivileged user.
FROM python:3.11-slim
COPY --from=build /opt/scanner /opt/scanner
RUN useradd --create-home --uid 1000 scanner \
    && mkdir -p /incoming /data \
    && chown scanner /data
USER 1000
ENV PATH=/opt/scanner/bin:$PATH \
    SCANNER_DB=sqlite:////data/scanner.db
VOLUME ["/data", "/incoming"]
# Healthy while this container's watch daemon beats in the database (scanner status).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["scanner", "status", "--healthy"]
# SIGTERM (docker stop) finishes the batch in hand, commits and exits 0.
ENTRYPOINT ["scanner"]
CMD ["watch", "/incoming", "--log-format", "json"]
