# Stand-in for redis:7-alpine: Debian's redis-server, without the protected mode Debian's build starts in
# (the official image has none, and the signal app reaches it over the compose network).
FROM p2pal-standin/bookworm:minbase
RUN apt-get update -qq \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
  && rm -rf /var/lib/apt/lists/* \
  && printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' >/usr/local/bin/redis-server \
  && chmod +x /usr/local/bin/redis-server
CMD ["redis-server"]
