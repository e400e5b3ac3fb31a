# Remediator as a container: slim Python, non-root, settings from the environment.
#   docker build -t remediator .
#   docker run -e REMEDIATOR_POLICIES=/policies -v $PWD/policies:/policies:ro remediator
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REMEDIATOR_LOG_FORMAT=json \
    REMEDIATOR_POLICIES=/etc/remediator/policies \
    REMEDIATOR_AUDIT_PATH=/var/lib/remediator/audit.jsonl \
    REMEDIATOR_LISTEN=0.0.0.0:9464
COPY --from=build /install /usr/local
COPY policies /etc/remediator/policies
RUN useradd --system --uid 10001 --home-dir /var/lib/remediator --create-home remediator
USER 10001
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)" || exit 1
ENTRYPOINT ["remediator"]
CMD ["run"]
