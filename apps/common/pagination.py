"""Pagination of the API's lists: DRF's page numbers, with `page` given at most once and never empty."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class StrictPageNumberPagination(PageNumberPagination):
    def get_page_number(self, request: Request, paginator: object) -> str | int:
        values = request.query_params.getlist(self.page_query_param)
        if len(values) > 1:
            raise ValidationError({self.page_query_param: ["Give this parameter once."]})
        if values and values[0] == "":
            raise ValidationError({self.page_query_param: ["This parameter needs a value."]})
        return super().get_page_number(request, paginator)
