"""Moving-digit clips from scikit-learn's bundled digits."""
