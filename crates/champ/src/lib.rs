//! Merkle CHAMP (in progress).
