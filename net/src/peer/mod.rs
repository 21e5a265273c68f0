//! Authenticated peer connections: handshake, framing, limits, bans, gossip. (In progress.)
