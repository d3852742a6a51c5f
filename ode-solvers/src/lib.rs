//! Generic-float ODE integrators (explicit Runge–Kutta tableaux, Adams–Bashforth–Moulton).
