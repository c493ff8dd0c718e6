"""Puts <repo>/python on sys.path, as the scripts do for themselves."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
