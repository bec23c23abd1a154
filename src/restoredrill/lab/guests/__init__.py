"""Real guests for the Proxmox double: processes in their own network namespace on an
isolated bridge, chrooted into the root file system restored from the datastore."""
