# Stand-in for coturn/coturn:4.6: Debian's coturn (4.6.1), `turnserver` on the PATH as in the official image.
FROM p2pal-standin/bookworm:minbase
RUN apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends coturn >/dev/null \
  && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["turnserver"]
