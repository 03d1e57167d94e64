# syntax=docker/dockerfile:1
# Multi-stage build: a static musl binary in an empty image, running as a non-root user.
#   docker build -t ghcr.io/selfheal/selfheal:0.1.0 .

FROM rust:1.89-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for bench in mutate watcher; do echo 'fn main() {}' > "benches/$bench.rs"; done \
 && cargo build --release --locked --target x86_64-unknown-linux-musl --bin selfheal \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl --bin selfheal \
 && strip target/x86_64-unknown-linux-musl/release/selfheal

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/selfheal /selfheal
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/selfheal"]
CMD ["serve"]
