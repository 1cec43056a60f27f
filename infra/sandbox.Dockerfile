# The sandbox image for machines that can pull a base image (the docker backend's alternative to the
# locally imported one that borrows the host's /usr). Build and use it with:
#   docker build -f infra/sandbox.Dockerfile -t verifarm-sandbox:debian .
#   DockerConfig(image="verifarm-sandbox:debian", mount_host_usr=False)
# The agent (sandbox/*.py) is still bind-mounted read-only at /opt/verifarm at run time, so the image never
# goes stale against the code. Containers run with a read-only root, no network, tmpfs /work and /tmp,
# dropped capabilities and cgroup limits; programs run as nobody (65534). The toolchains are the ones the
# language table (sandbox/languages.py) names in its rows' `packages`.
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 gcc libc6-dev procps util-linux \
      g++ golang-go rustc nodejs default-jdk-headless \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /work /opt/verifarm /run/verifarm \
 && chmod 0755 /work /opt/verifarm && chmod 0700 /run/verifarm

ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
WORKDIR /work
CMD ["python3", "-I", "-S", "/opt/verifarm/agent.py"]
