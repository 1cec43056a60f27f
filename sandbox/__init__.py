"""Run untrusted programs under hard limits; backends behind one small interface."""
