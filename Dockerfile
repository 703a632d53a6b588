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
# tests/test_self_update.py, whose base also has setuptools and dockerup's
# dependencies, and builds without isolation, so that pip needs no index). Otherwise pip downloads them from its
# index: where only the host can reach it, build with `docker build --network host`.
ARG BASE_IMAGE=python:3.11-slim
# Any image with a docker CLI at /usr/local/bin/docker (static in the official one).
ARG DOCKER_CLI_IMAGE=docker:28-cli

FROM ${DOCKER_CLI_IMAGE} AS docker-cli

FROM ${BASE_IMAGE}
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY pyproject.toml setup.py dockerup.py README.md LICENSE /tmp/dockerup/
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore /tmp/dockerup \
    && rm -rf /tmp/dockerup \
    && dockerup --version && docker --version

# No VOLUME: the docker socket, /etc/dockerup and the cache are bind-mounted from the
# host. A VOLUME would turn a forgotten -v into an empty directory of the container's
# own instead of a clear error; for the cache that is worse than an error: its lock
# works only in the one host directory every dockerup on the host shares, and with a
# volume each would have its own, so two (say, during a self-update) could converge
# at once.
# Options after the image name are added, e.g. `... dockerup --interval 30`.
ENTRYPOINT ["dockerup", "--server"]
