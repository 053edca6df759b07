"""The `resnest-deploy` command line. It parses, calls one library function per command, and prints."""
