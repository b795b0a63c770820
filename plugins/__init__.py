"""kdbench's built-in plugins, registered through the `kdbench` entry-point group."""
