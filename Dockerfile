# peekd container image: build with the project's own Makefile, run as a
# non-root user with the store on a named volume at /data.
#
#   docker build -t peekd .
#   docker run -d -p 8080:8080 -v peekd-data:/data \
#       -e STASH_URL=http://stash:9999 -e STASH_API_KEY=... peekd
#
# Never bind-mount a host folder at /data on Windows or macOS (9p/FUSE:
# peekd refuses it; see docs/OPERATIONS.md).  docker-compose.yml lists every
# setting.

# ---- build stage: the -dev packages and `make`, nothing else -------------
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      liblmdb-dev libmicrohttpd-dev libcjson-dev libcurl4-openssl-dev \
      libroaring-dev libxxhash-dev libdeflate-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore keeps the context to the Makefile, the module folders and
# tools/ (no build/, no tests, no .git).
COPY . .
# The same Makefile and flags as CI (-Werror included).
RUN make -j"$(nproc)" build/peekd
RUN ./build/peekd version

# ---- runtime stage: runtime libraries, ffmpeg, the binary ----------------
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      liblmdb0 libmicrohttpd12 libcjson1 libcurl4 libroaring0 libxxhash0 \
      libdeflate0 \
      ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 peekd \
 && useradd --system --uid 10001 --gid peekd --home-dir /data \
      --no-create-home --shell /usr/sbin/nologin peekd \
 && mkdir -p /data \
 && chown peekd:peekd /data \
 && chmod 0750 /data
COPY --from=build /src/build/peekd /usr/local/bin/peekd

# A new named volume is initialised from the image's /data, so it starts
# owned by peekd (uid 10001).
VOLUME /data
ENV PEEKD_DATA=/data PEEKD_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER peekd:peekd
WORKDIR /data

# `peekd health` GETs /api/health on $PEEKD_LISTEN (0.0.0.0 -> 127.0.0.1):
# no curl in the image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["peekd", "health"]

# serve handles SIGTERM: stops accepting, finishes in-flight requests and
# the current sync page, closes the store, exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["peekd"]
CMD ["serve"]
