"""enrp"""
