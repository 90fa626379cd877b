"""handlespace"""
