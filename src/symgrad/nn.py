"""Neural-network losses and layers built from primitive ops."""
