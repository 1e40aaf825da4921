"""flowker.auth"""
