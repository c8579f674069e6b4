//! matchgate gateway.
