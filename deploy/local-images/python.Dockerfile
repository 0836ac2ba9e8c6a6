# STAND-IN for python:3.12-slim-bookworm, built here because no image registry is reachable
# (deploy/local-images/build.py). Debian 12 has no Python 3.12 package: the interpreter is a CPython
# 3.12 build from the host, copied to /usr/local as the official image has it.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates netbase libssl3 libffi8 libsqlite3-0 \
      libbz2-1.0 liblzma5 libreadline8 libncursesw6 libuuid1 libexpat1 libtirpc3 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY python/ /usr/local/
# This network's TLS-terminating proxy: its CA, so pip reaches PyPI from builds (never in official images).
COPY proxy-ca.crt /usr/local/share/ca-certificates/build-network-proxy.crt
RUN update-ca-certificates >/dev/null \
 && ldconfig \
 && ln -sf python3.12 /usr/local/bin/python3 && ln -sf python3 /usr/local/bin/python \
 && printf '#!/bin/sh\nexec /usr/local/bin/python3.12 -m pip "$@"\n' > /usr/local/bin/pip && chmod 755 /usr/local/bin/pip \
 && python3 -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib; print('python', __import__('sys').version)"
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 LANG=C.UTF-8
CMD ["python3"]
