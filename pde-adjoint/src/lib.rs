//! The adjoint method on PDE-constrained problems: the heated rod and plate.
