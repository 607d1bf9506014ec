"""Pure statistics over sufficient statistics per arm."""
