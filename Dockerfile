# perfstream: build the binary, ship it on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release -p perfstream && cp target/release/perfstream /perfstream

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /perfstream /usr/local/bin/perfstream
USER 65534
ENTRYPOINT ["/usr/local/bin/perfstream"]
CMD ["run"]
