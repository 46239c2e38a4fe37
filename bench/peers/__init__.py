"""Peer servers (Prosody, Synapse) driven with the same workload as Tidings."""
