"""First day on a real site: ``restoredrill init`` (a draft inventory from what the site
already says: the PVE and PBS APIs and borgmatic's configuration) and ``restoredrill setup``
(the drill users, tokens, roles, pool and ACLs as ``pveum`` / ``proxmox-backup-manager``
commands, or sent through the API with an admin token).

Modules: ``borgmatic`` (configuration files -> Borg repository drafts, pure), ``discover``
(read-only API reads), ``draft`` (the draft inventory and its comments), ``yamltext`` (YAML
with comments), ``privileges`` (what each token needs for an inventory, pure), ``setup``
(commands and ``--apply``).
"""
