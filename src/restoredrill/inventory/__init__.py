"""The inventory: what the site has and what the drills must prove."""
from restoredrill.inventory.loader import InventoryError, LoadedInventory, load_inventory, parse_inventory
from restoredrill.inventory.model import BorgRepository, Inventory

__all__ = ["BorgRepository", "Inventory", "InventoryError", "LoadedInventory", "load_inventory",
           "parse_inventory"]
