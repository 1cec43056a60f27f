"""Gymnasium environments for verifiable math and code, with their pure task generators and verifiers."""
