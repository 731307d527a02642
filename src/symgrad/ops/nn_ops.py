"""nn ops: convolution and pooling (declared in this module)."""
