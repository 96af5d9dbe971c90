//! End-to-end tests: real `mass` processes on 127.0.0.1 (or in network
//! namespaces the test creates), checked the way a user would check them.
//! Every process a test starts is killed when its handle drops.

mod support;

mod bridge;
mod byzantine;
mod cli;
mod compress;
mod compute;
mod dashboard;
mod datasets;
mod drain;
mod formats;
mod grpc;
mod hostile;
mod jobs;
mod joining;
mod learners;
mod liveness;
mod mdns;
mod mesh;
mod partition;
mod private_mesh;
mod python_client;
mod read_your_writes;
mod rogue;
mod scoring;
mod security;
mod serving;
mod stalls;
mod storage;
mod studies;
