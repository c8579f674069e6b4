//! matchgate Lambdas.
