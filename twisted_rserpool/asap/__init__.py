"""asap"""
