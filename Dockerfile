# syntax=docker/dockerfile:1
# mlplatform operator image: `docker build -t ghcr.io/mlplatform/operator:0.1.0 .`
# Runs as 65532 (non-root) and works with a read-only root filesystem (/tmp is an emptyDir).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package needs: pyproject and the sources (templates and config data included).
COPY pyproject.toml ./
COPY operator/ ./operator/
RUN python -m venv /opt/mlplatform \
 && /opt/mlplatform/bin/pip install . \
 && /opt/mlplatform/bin/python -m compileall -q /opt/mlplatform \
 && /opt/mlplatform/bin/mlplatform --help >/dev/null

FROM python:3.11-slim
LABEL org.opencontainers.image.title="mlplatform-operator" \
      org.opencontainers.image.description="Kubernetes operator for FeatureView, ModelDeployment and TrainingJob" \
      org.opencontainers.image.version="0.1.0"
# Same base image as the build stage, so the venv's interpreter path is valid here.
COPY --from=build /opt/mlplatform /opt/mlplatform
ENV PATH=/opt/mlplatform/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin nonroot
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["mlplatform", "run", "--bind-address", "0.0.0.0"]
