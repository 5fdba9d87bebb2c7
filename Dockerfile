# scanner as a watch-folder daemon:
#   docker build -t scanner .
#   docker run -v /srv/incoming:/incoming -v /srv/scanner:/data scanner
# Bind mounts from some hosts send no file events: add `--polling` to the command then.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY scanner ./scanner
COPY plugins ./plugins
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home --uid 1000 scanner \
    && mkdir -p /incoming /data && chown scanner /data

USER scanner
ENV SCANNER_DB=sqlite:////data/scanner.db
VOLUME ["/data"]
# SIGTERM (docker stop) finishes the batch in hand, commits and exits 0.
ENTRYPOINT ["scanner"]
CMD ["watch", "/incoming", "--log-format", "json"]
