from .category import Category
from .product import DigitalProduct, Product, ProductProxy

__all__ = ["Category", "DigitalProduct", "Product", "ProductProxy"]
