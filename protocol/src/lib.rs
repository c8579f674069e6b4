//! matchgate wire types.
