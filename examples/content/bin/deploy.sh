#!/bin/sh
echo "deploying release 1.4.2"
