"""flowker.audit"""
