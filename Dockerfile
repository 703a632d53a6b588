# dockerup in a container: Python, dockerup and a docker CLI, serving by default.
#
#   docker build -t dockerup .
#   docker run -d --name dockerup --restart always \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /etc/dockerup:/etc/dockerup:ro -v /var/cache/dockerup:/var/cache/dockerup \
#     dockerup
#
# To let it update itself from a registry: add `--label dockerup.id=dockerup` to that
# line and put etc/dockerup-self.json in /etc/dockerup/containers.d/ (docs/running.md).
#
# Both images are build arguments, so the image can be built where no public
# registry is reachable, from a locally made base with Python and pip (see
# tests/test_self_update.py, whose base also has setuptools, wheel and dockerup's
# dependencies, so that pip needs no index). Otherwise pip downloads them from its
# index: where only the host can reach it, build with `docker build --network host`.
ARG BASE_IMAGE=python:3.11-slim
# Any image with a docker CLI at /usr/local/bin/docker (static in the official one).
ARG DOCKER_CLI_IMAGE=docker:28-cli

FROM ${DOCKER_CLI_IMAGE} AS docker-cli

FROM ${BASE_IMAGE}
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
# README.md is optional (setup.py reads it if present): the pattern may match nothing.
COPY setup.py dockerup.py README.m[d] /tmp/dockerup/
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore /tmp/dockerup \
    && rm -rf /tmp/dockerup \
    && dockerup --version && docker --version

# The docker socket is bind-mounted, not declared here: a VOLUME on its path would
# turn a forgotten -v into an empty directory instead of a clear "cannot connect".
# The cache must be a host directory shared by every dockerup on the host: its lock
# is what keeps two of them (say, during a self-update) from converging at once.
VOLUME ["/etc/dockerup", "/var/cache/dockerup"]
# Options after the image name are added, e.g. `... dockerup --interval 30`.
ENTRYPOINT ["dockerup", "--server"]
