//! Integration tests of the peer layer over loopback TCP (127.0.0.1, port 0):
//! real nodes, and raw sockets that play a misbehaving peer.

mod abuse;
mod backpressure;
mod common;
mod connect;
mod refuse;
